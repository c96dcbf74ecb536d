"""Integrations with the tools simdex users build on.

- ``simdex.integrations.langchain``: ``SimdexVectorStore``, a LangChain vector store
  (``pip install 'simdex[langchain]'``);
- ``simdex.integrations.sklearn`` (also ``simdex.sklearn``): scikit-learn estimators
  ``NearestNeighbors``, ``KNeighborsTransformer``, ``LeanVecTransformer``, ``PQTransformer``
  (``pip install 'simdex[sklearn]'``);
- ``simdex.integrations.ann_benchmarks``: ann-benchmarks ``BaseANN``-shaped wrappers for every
  index kind, with the ``config.yml`` ann-benchmarks reads.

Each submodule imports its framework when it is imported, never before: ``import simdex``
needs none of them.
"""
