"""Theory as computations: distances between sets of matrices, contraction checks, joint
spectral radius bounds with certificates, fixed sets of matrix families, implicit vs
piggyback limits and the papers' error bounds."""
