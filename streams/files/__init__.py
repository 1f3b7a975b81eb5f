"""The file slice's workers: the projection (`file-projection`) and the image optimiser (`file-optimizer`)."""
