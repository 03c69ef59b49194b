from shopify_export.cli import main

main()
