"""Usage ingestion: batches of usage events, each priced and charged once."""
