// Module Privacy.
