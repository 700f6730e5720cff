"""Constants shared by the inference tests and their fixtures."""

# name -> (height, width) of the readable images written by the ``image_folder`` fixture
FOLDER_IMAGES = {"rgb": (40, 56), "tall": (70, 30), "gray": (33, 47), "deep16": (24, 24), "alpha": (30, 30)}
