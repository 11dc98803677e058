"""Autograd of the torch QP backend: exact NNLS forward, implicit-differentiation backward.

The kernel (:mod:`policies.dlm.qp.kernel`) finds the optimal free set; this
module differentiates through it on that active set.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from policies.dlm.qp import kernel
from policies.dlm.qp.problem import q_eps_vector

__all__ = ["ForceQP", "solve_forces"]


class ForceQP(torch.autograd.Function):
    """Forces of K keyframe problems: exact NNLS forward, implicit-differentiation backward.

    Inputs (float64): ``wrench (K, 3)``, ``J (K, 3, C, 2)``, ``rays (K, C, 2 rays, 2 dims)``,
    ``w_contact (C,)`` force weights, ``q_eps (3,)``; ``q_ray`` and ``max_iter`` plain numbers.
    Outputs: ``Lambda (K, C, 2)`` and ``eps (K, 3)``.

    With ``M = J G`` (``(3, 2C)``), ``H = M^T Q M + blockdiag(w_c G_c^T G_c) + q_ray I``,
    ``c = M^T Q w`` and the optimal free set F, ``x_F = H_FF^{-1} c_F`` is smooth in the
    data while F is fixed, so with ``v = H_FF^{-1} (dL/dx)_F`` (zero off F)::

        dL/dH = -v x^T,   dL/dc = v,   hence
        dL/dM = Q eps v^T - Q (M v) x^T,   dL/dw += Q M v,
        dL/dG_c += -w_c (lambda_c v_c^T + (G_c v_c) x_c^T)

    and ``Lambda = G x``, ``eps = w - J Lambda``, ``M = J G`` give the rest by the chain rule.
    """

    @staticmethod
    def forward(ctx, wrench, J, rays, w_contact, q_eps, q_ray: float, max_iter: int):
        K, _, C, _ = J.shape
        with kernel.single_thread():
            M = torch.einsum("kicd,kcrd->kicr", J, rays).reshape(K, 3, 2 * C)
            QM = q_eps.view(1, 3, 1) * M
            gram = torch.einsum("kcrd,kcsd->kcrs", rays, rays) * w_contact.view(1, C, 1, 1)
            eye_c = torch.eye(C, dtype=J.dtype, device=J.device)
            blk = torch.einsum("kcrs,ce->kcres", gram, eye_c).reshape(K, 2 * C, 2 * C)
            H = M.transpose(-1, -2) @ QM + blk + q_ray * torch.eye(2 * C, dtype=J.dtype, device=J.device)
            c = (QM * wrench.unsqueeze(-1)).sum(-2)
            free, _, unconverged = kernel.nnls_free_set(H, c, max_iter)
            Hm, cm = kernel.masked_system(H, c, free)
            L = kernel.cholesky(Hm)
            x = kernel.chol_solve(L, cm)
            mask = free.to(x.dtype)
            for step in range(kernel.REFINE_STEPS + 1):
                lam = torch.einsum("kcr,kcrd->kcd", x.view(K, C, 2), rays)
                eps = wrench - torch.einsum("kicd,kcd->ki", J, lam)
                if step == kernel.REFINE_STEPS:
                    break
                # Refine with the residual of the least-squares form, c - H x = M^T Q eps -
                # (blockdiag + q_ray I) x, which never forms M^T Q M: the error then scales
                # with cond(A) of the stacked least-squares matrix, not cond(H) = cond(A)^2.
                r = (QM * eps.unsqueeze(-1)).sum(-2) - (blk * x.unsqueeze(-2)).sum(-1) - q_ray * x
                x = x + kernel.chol_solve(L, r * mask)
        if unconverged:
            warnings.warn(
                f"inverse-dynamics QP: the active-set search did not converge for {unconverged} of {K} "
                f"keyframes in {max_iter} iterations; their forces are approximate",
                RuntimeWarning,
                stacklevel=2,
            )
        ctx.save_for_backward(J, rays, w_contact, q_eps, M, L, x, free, lam, eps)
        return lam, eps

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_lam, g_eps):
        J, rays, w_contact, q_eps, M, L, x, free, lam, eps = ctx.saved_tensors
        K, _, C, _ = J.shape
        with kernel.single_thread():
            if g_lam is None:
                g_lam = torch.zeros_like(lam)
            if g_eps is None:
                g_eps = torch.zeros_like(eps)
            # eps = w - J Lambda
            g_w = g_eps.clone()
            g_L = g_lam - torch.einsum("kicd,ki->kcd", J, g_eps)
            g_J = -torch.einsum("ki,kcd->kicd", g_eps, lam)
            # Lambda = G x
            xr = x.view(K, C, 2)
            g_x = torch.einsum("kcd,kcrd->kcr", g_L, rays).reshape(K, 2 * C)
            g_rays = torch.einsum("kcr,kcd->kcrd", xr, g_L)
            # x = H_FF^{-1} c_F
            v = kernel.chol_solve(L, g_x * free.to(x.dtype))
            vr = v.view(K, C, 2)
            Mv = (M * v.unsqueeze(-2)).sum(-1)  # (K, 3)
            g_M = q_eps.view(1, 3, 1) * (eps.unsqueeze(-1) * v.unsqueeze(-2) - Mv.unsqueeze(-1) * x.unsqueeze(-2))
            g_w = g_w + q_eps * Mv
            Gv = torch.einsum("kcr,kcrd->kcd", vr, rays)
            g_rays = g_rays - w_contact.view(1, C, 1, 1) * (
                vr.unsqueeze(-1) * lam.unsqueeze(-2) + xr.unsqueeze(-1) * Gv.unsqueeze(-2)
            )
            # M = J G
            g_Mr = g_M.view(K, 3, C, 2)
            g_J = g_J + torch.einsum("kicr,kcrd->kicd", g_Mr, rays)
            g_rays = g_rays + torch.einsum("kicd,kicr->kcrd", J, g_Mr)
        return g_w, g_J, g_rays, None, None, None, None


def solve_forces(
    wrench: torch.Tensor,
    jacobian: torch.Tensor,
    finger_cones: torch.Tensor,
    env_cones: torch.Tensor,
    weights: dict[str, Any],
    max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forces of the flattened problems: ``(K, 3)``, ``(K, 3, 2C)``, rays ``(K, N, 2, 2)``, ``(K, E, 2, 2)``.

    Returns ``(finger_forces (K, N, 2), env_forces (K, E, 2), slack (K, 3))`` in float64.
    """
    K = wrench.shape[0]
    N, E = finger_cones.shape[1], env_cones.shape[1]
    C = N + E
    dt = torch.float64
    rays = torch.cat([finger_cones, env_cones], dim=1).to(dt)
    J = jacobian.to(dt).reshape(K, 3, C, 2)
    dev = wrench.device
    w_contact = torch.tensor([weights["q_lambda"]] * N + [weights["q_e"]] * E, dtype=dt, device=dev)
    q_eps = torch.tensor(q_eps_vector(weights["q_eps"]), dtype=dt, device=dev)
    lam, eps = ForceQP.apply(wrench.to(dt), J, rays, w_contact, q_eps, weights["q_ray"], max_iter)
    return lam[:, :N], lam[:, N:], eps
