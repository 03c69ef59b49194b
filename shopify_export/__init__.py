"""Export every customer of a Shopify store into SQLite (and CSV), resumably."""

__version__ = "0.1.0"
