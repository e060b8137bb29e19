"""The worker's web pages: pipeline figures now; the API and dashboard next."""
