"""scikit-learn estimators: ``simdex.sklearn.NearestNeighbors`` and friends (defined in
``simdex.integrations.sklearn``; needs ``pip install 'simdex[sklearn]'``)."""

from .integrations.sklearn import (
    KNeighborsTransformer,
    LeanVecTransformer,
    NearestNeighbors,
    PQTransformer,
)

__all__ = ["KNeighborsTransformer", "LeanVecTransformer", "NearestNeighbors", "PQTransformer"]
