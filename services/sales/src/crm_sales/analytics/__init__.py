"""Sales: conversion analytics."""
