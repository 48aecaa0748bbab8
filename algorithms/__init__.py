"""Iteration maps F(x, θ) of first-order and second-order algorithms, prox operators and
projections, and estimators of the derivative of the limit of x_{k+1} = F(x_k, θ).

Every algorithm exposes its iteration map as a pure JAX function ``F(x, theta)`` whose
parameters live in one pytree ``theta``; the differentiation strategies consume that map
without knowing the algorithm.
"""

from conservative._version import __version__

# --- iteration maps of first-order methods, problems, prox operators and projections ---
from ._first_order import admm, douglas_rachford, forward_backward, gradient_descent
from ._momentum import heavy_ball, nesterov, phase_state
from ._problems import (
    Problem,
    graphical_lasso,
    graphical_lasso_reference,
    lasso,
    lasso_reference,
    tv_denoising,
    tv_denoising_reference,
)
from ._projections import (
    projection_affine_set,
    projection_box,
    projection_halfspace,
    projection_hyperplane,
    projection_l1_ball,
    projection_l2_ball,
    projection_linf_ball,
    projection_non_negative,
    projection_simplex,
)
from ._prox import prox_elastic_net, prox_group_lasso, prox_lasso, soft_threshold
from ._run import IterationMap, Solution, fixed_point_residual, run, solve

# isort: split
# --- estimators of the derivative of the limit, implicit differentiation, smooth solvers ---
from ._implicit import RESIDUAL_RTOL, ResidualWarning, custom_fixed_point, custom_root, root_jvp, symmetry_hint
from ._interior_point import (
    QP,
    IPState,
    interior_point_map,
    qp_initial_state,
    qp_optimality,
    qp_residuals,
    qp_solve,
)
from ._iterate import CHUNK_SECONDS, MAX_GROWTH, MODES, DivergenceWarning, implicit_plan, iterate
from ._linear_solve import (
    SOLVERS,
    IllConditionedWarning,
    LinearSolveWarning,
    bicgstab,
    cg,
    gmres,
    normal_cg,
    solve_linear,
)
from ._mirror_descent import entropic_objective, mirror_descent_map
from ._newton import logistic_regression_hessian, logistic_regression_objective, newton_map, newton_solve
from ._optimality import (
    block_proximal_gradient,
    kkt,
    kl_projection_simplex,
    mirror_descent,
    newton_fixed_point,
    projected_gradient,
    proximal_gradient,
    stationarity,
)
from ._precision import EstimatorErrors, estimator_errors, flat_jacobian, reference_jacobian
from ._restricted import free_coordinates, restricted_solve
from ._sinkhorn import (
    EntropicOT,
    sinkhorn_anchored_map,
    sinkhorn_map,
    sinkhorn_plan,
    sinkhorn_potentials,
)
from ._strategies import (
    CG,
    DENSE_THRESHOLD,
    GMRES,
    LU,
    Auto,
    BiCGSTAB,
    Cholesky,
    Custom,
    NormalCG,
    as_strategy,
    choose_solver,
)

