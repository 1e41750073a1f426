"""One module per distillation method: its pure loss next to its thin Distiller.

Every module here is imported by :func:`kdlens.distill.load_methods`, which fills the registry: a new
method is one new file, with no list to edit.
"""
