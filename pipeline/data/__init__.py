"""Dataset sources, the common interim form, preprocessing and the torch Dataset."""
