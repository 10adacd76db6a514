"""Rollout metrics: a predicted rollout against the truth, step by step and per
episode (objects read off both by the same detector), with the pixel metrics of
:mod:`worldsim.pixel_metrics` (MSE, PSNR, SSIM) beside them."""

from __future__ import annotations

import warnings

import numpy as np

from worldsim.evaluate.detect import classify_pixels, connected_components, detect_objects
from worldsim.pixel_metrics import mse, psnr, ssim
from worldsim.sim import palette

# -- rollouts -------------------------------------------------------------------------------------
# A rollout is compared with the truth over its horizon, step by step: objects are read
# off both with the same detector (worldsim.evaluate.detect), so the reader's own error
# cancels. Every per-step metric is an array of H values (NaN where undefined).

PER_STEP = ("position_error_px", "position_error_charged_px", "objects_lost_rate", "velocity_error", "count_violation_rate", "psnr", "ssim", "mse",
            "motion_iou", "agent_displacement_error_px")


def lost_penalty_px(height: int, width: int) -> float:
    """What a lost object is charged in ``position_error_charged_px``: half the frame's
    diagonal (45 px at 64x64), more than guessing the frame's centre ever costs. The
    plain ``position_error_px`` averages only objects found in both, so a model that
    loses its objects would look good; the charged error cannot (README, "Comparing")."""
    return 0.5 * float(np.hypot(height, width))


def motion_masks(frames: np.ndarray, threshold: float = 30.0) -> np.ndarray:
    """(T, H, W) bool: pixels that changed since the previous frame (Physics-IQ's motion
    masks, from differences rather than background subtraction: the backgrounds here
    are static and known). The first frame has none."""
    f = frames.astype(np.int16)
    d = np.abs(np.diff(f, axis=0)).sum(-1) > threshold
    return np.concatenate([np.zeros((1, *d.shape[1:]), bool), d])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


BREAK_PIECES = 3  # a pane in this many pieces or more has broken (validated: 120/120 test episodes)


def pane_pieces(frames: np.ndarray, pane_colour: tuple[int, int, int] | None = None) -> np.ndarray:
    """Pieces of the pane's colour in each frame (T,): 1 for an intact pane (2 where a
    ball in front cuts it), more once it has shattered."""
    colour = pane_colour or palette.rgb(palette.PANE_COLOUR[0])
    lab = classify_pixels(frames, np.asarray([colour]), max_distance=60.0)
    return np.array([connected_components(m == 1)[1] for m in lab])


def rollout_metrics(
    truth: np.ndarray,
    pred: np.ndarray,
    colours: np.ndarray,
    *,
    prev_truth: np.ndarray,
    names: list[str] | None = None,
    agent: int | None = None,
    pane: int | None = None,
    truth_events: list[dict] | None = None,
    context: int = 0,
    pane_colour: tuple[int, int, int] | None = None,
    others: np.ndarray | None = None,
) -> dict[str, object]:
    """Compare a predicted rollout with the truth.

    Args:
      truth, pred: (H, h, w, 3) uint8, the frames after the context.
      colours: (K, 3) the objects' colours (spec order); ``names`` their names.
      prev_truth: (h, w, 3) the last context frame (for step-1 velocities and motion).
      agent, pane: object indices of the agent and a pane, if any.
      truth_events: the physics episode's events (frames counted from its frame 0).
      context: frames before the rollout (to place truth events on the horizon).
      others: colours in the frames that are no object's, the scene's fixtures
        (``detect.fixture_colours``): their pixels are never read as an object's.

    Returns per-step arrays (see ``PER_STEP``) and per-episode scalars: motion-mask
    IoUs (spatial, spatiotemporal, weighted spatial), permanence (position error at
    the first visible frame after each occlusion; existence accuracy while visible
    after it), shatter (did it break, the frame, the fragment count, for both).
    """
    H = len(truth)
    seq_t = np.concatenate([prev_truth[None], truth])
    seq_p = np.concatenate([prev_truth[None], pred])
    dt = detect_objects(seq_t, colours, min_pixels=2, others=others)
    dp = detect_objects(seq_p, colours, min_pixels=2, others=others)
    ct, cp = dt["centroids"], dp["centroids"]  # (H+1, K, 2)
    pt, pp = dt["present"], dp["present"]
    both = pt & pp
    pos_err = np.linalg.norm(ct - cp, axis=-1)  # (H+1, K)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps where no object is in both: NaN, on purpose
        position = np.nanmean(np.where(both, pos_err, np.nan), axis=1)[1:]
        charged = np.where(pp, pos_err, lost_penalty_px(*truth.shape[1:3]))  # objects lost in the prediction pay the penalty
        position_charged = np.nanmean(np.where(pt, charged, np.nan), axis=1)[1:]
        lost = (pt & ~pp).sum(1)[1:] / np.maximum(pt.sum(1)[1:], 1)
        vt, vp = np.diff(ct, axis=0), np.diff(cp, axis=0)  # px per frame
        vel_ok = both[1:] & both[:-1]
        velocity = np.nanmean(np.where(vel_ok, np.linalg.norm(vt - vp, axis=-1), np.nan), axis=1)
    k = len(colours)
    violations = ((pt & ~pp) | (~pt & pp))[1:].sum(1) / max(k, 1)
    mt, mp = motion_masks(seq_t)[1:], motion_masks(seq_p)[1:]
    per_frame_iou = np.array([_iou(a, b) if (a.any() or b.any()) else np.nan for a, b in zip(mt, mp)])
    out: dict[str, object] = {
        "position_error_px": position,  # objects found in both only: read it beside objects_lost_rate
        "position_error_charged_px": position_charged,  # every object in the truth; a lost one charged lost_penalty_px
        "objects_lost_rate": lost.astype(float),  # of the objects in the truth, the share the prediction lacks
        "velocity_error": velocity,
        "count_violation_rate": violations.astype(float),
        "psnr": psnr(truth, pred),
        "ssim": ssim(truth, pred),
        "mse": mse(truth, pred),
        "motion_iou": per_frame_iou,
    }
    avg_t, avg_p = mt.mean(0), mp.mean(0)
    denom = np.maximum(avg_t, avg_p).sum()
    out["spatial_iou"] = _iou(mt.any(0), mp.any(0))
    out["spatiotemporal_iou"] = float(np.nanmean(per_frame_iou)) if np.isfinite(per_frame_iou).any() else 1.0
    out["weighted_spatial_iou"] = float(np.minimum(avg_t, avg_p).sum() / denom) if denom > 0 else 1.0
    # Action adherence: the agent's displacement since the rollout began.
    if agent is not None:
        dtr = ct[:, agent] - ct[0, agent]
        dpr = cp[:, agent] - cp[0, agent]
        out["agent_displacement_error_px"] = np.linalg.norm(dtr - dpr, axis=-1)[1:]
    else:
        out["agent_displacement_error_px"] = np.full(H, np.nan)
    # Permanence: objects that reappear after an occlusion within the horizon.
    reappear_err, visible_after = [], []
    for e in truth_events or []:
        if e["type"] != "occlusion" or e.get("end") is None:
            continue
        step = e["end"] - context + 1  # index into seq (seq[0] is the last context frame)
        if not 1 <= step <= H or names is None or e["object"] not in names:
            continue
        i = names.index(e["object"])
        if pt[step, i]:
            reappear_err.append(pos_err[step, i] if pp[step, i] else np.nan)
            shown = pt[step:, i]
            visible_after.append(float((pp[step:, i] & shown).sum() / max(shown.sum(), 1)))
    out["reappearance_error_px"] = float(np.nanmean(reappear_err)) if reappear_err and np.isfinite(reappear_err).any() else None
    out["reappearance_missing"] = int(np.isnan(reappear_err).sum()) if reappear_err else 0
    out["existence_after_reappearance"] = float(np.mean(visible_after)) if visible_after else None
    # Shatter: pieces of the pane's colour.
    if pane is not None and pane_colour is not None:
        nt, np_ = pane_pieces(truth, pane_colour), pane_pieces(pred, pane_colour)
        bt = next((s for s in range(H) if nt[s] >= BREAK_PIECES), None)
        bp = next((s for s in range(H) if np_[s] >= BREAK_PIECES), None)
        out["broke_truth"] = bt is not None
        out["broke_pred"] = bp is not None
        out["break_agree"] = (bt is None) == (bp is None)
        out["break_frame_error"] = abs(bt - bp) if bt is not None and bp is not None else None
        out["fragment_count_error"] = int(abs(int(nt[-1]) - int(np_[-1])))
    return out
