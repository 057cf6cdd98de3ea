"""Everything that knows sd-scripts' file formats, arguments and checkout layout."""
