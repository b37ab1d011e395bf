"""The actions templates are built from. :mod:`.base` is the contract; the others implement it."""
