"""The web as a source of documents: pages and sitemaps fetched politely and within bounds."""
