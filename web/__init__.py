"""The dashboard (static HTML, CSS and JS), shipped in the wheel as the data package
logstream.web."""
