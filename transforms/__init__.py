"""Pure pandas steps of the loop: DataFrames and values in, DataFrames out."""
