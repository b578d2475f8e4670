"""The attractor landscape on faces of the Boolean hypercube: 2D planes and 1D basin profiles."""
