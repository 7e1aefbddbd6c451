"""The machinery of the MPI backend (see ``parallelizer.mpi``)."""
