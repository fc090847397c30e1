"""The portal: a Private Link Center in the browser, on the server's own ARM API."""
