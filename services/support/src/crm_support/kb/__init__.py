"""The knowledge base: articles with their problem and solution, full-text search, suggestions and usage."""
