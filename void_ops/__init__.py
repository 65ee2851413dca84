"""The inner ring: pixels and models (intake, media, colour, masks, VOID, compositing, conform), with no Prefect,
Ray or database. Import the modules; the package itself exports nothing."""

__all__: list[str] = []
