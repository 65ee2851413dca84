"""VOID (Video Object and Interaction Deletion): the model, its value path, pass 1 and pass 2."""

__all__: list[str] = []
