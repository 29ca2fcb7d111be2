"""Where events come from: the provider catalogue, the HTTP transport, the parsers of each
kind of feed and JSON API (registered in `kinds`), and detection of a page's best source."""
