import sys

sys.exit(4)  # a module that ends the interpreter while it is imported

