"""Image scanning: inventory readers, the offline vulnerability database, matching, SBOMs; managed signing."""
