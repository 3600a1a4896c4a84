#!/usr/bin/env bash
# Starts the mongo image's own entrypoint with a keyFile. A replica set with access control needs one
# (its members prove themselves to each other with it), even with a single member; this one is made
# on first start and kept on the config volume. The image's entrypoint creates the root user and runs
# /docker-entrypoint-initdb.d on an empty data directory (without --replSet, --auth and --keyFile),
# then starts mongod with the arguments given here.
set -euo pipefail

keyfile=/data/configdb/replica-set.key
if [ ! -s "$keyfile" ]; then
  # 756 random bytes are 1008 base64 characters: under mongod's limit of 1024.
  (umask 077 && head -c 756 /dev/urandom | base64 -w 0 > "$keyfile")
fi
chown mongodb:mongodb "$keyfile"
chmod 400 "$keyfile"

exec docker-entrypoint.sh "$@" --keyFile "$keyfile"
