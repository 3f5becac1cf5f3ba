"""Curvature: eigenpairs, traces and spectral densities from Hessian-vector products."""
