"""The work of the pipeline, on the field's libraries (NEURON, eFEL, BluePyEfe, BluePyOpt, h5py).

Knows nothing of Luigi. Each step takes an access point (for every read, write and path) and,
where it fans out, a map function.

Modules: ``mechanisms`` (compile and load .mod files), ``cell_model`` (BluePyOpt cell from the
model configuration), ``evaluator`` (protocols, one eFEL call per recording, scores),
``optimisation``, ``mappers`` (serial, multiprocessing, ipyparallel, dask), ``validation``,
``export`` (hoc and SONATA), ``extraction`` and ``readers`` (recordings -> e-features),
``plotting`` (figures).
"""
