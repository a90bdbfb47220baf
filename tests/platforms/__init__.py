"""Local stand-ins for shop platforms (Shopify, WooCommerce): HTTP servers that answer in the
platforms' documented request and response shapes, seeded from the demo orders."""
