"""Summaries for the prompt page and the logit-lens page."""
from __future__ import annotations

from helpers.core.names import show_token
from helpers.core.prompts import Contrast, NextTokens
from helpers.methods.logit_lens import LogitLens, biggest_step, sublayer_after
from helpers.paper import Study

Row = tuple[str, object, object]


def prompt_summary(contrast: Contrast, predictions: dict[str, NextTokens]) -> dict:
    """What page 01 says about the two prompts and the prompt's last sentence alone."""
    clean, corrupted, alone = predictions["clean"], predictions["corrupted"], predictions["second sentence only"]
    return dict(
        n_tokens=contrast.clean.shape[1],
        p_target_clean=clean.target_prob,
        p_other_clean=clean.other_prob,
        p_target_corrupted=corrupted.target_prob,
        p_other_corrupted=corrupted.other_prob,
        ld_clean=clean.logit_diff,
        ld_corrupted=corrupted.logit_diff,
        top_clean=show_token(clean.tokens[0]),
        top_corrupted=show_token(corrupted.tokens[0]),
        top_alone=show_token(alone.tokens[0]),
        p_target_alone=alone.target_prob,
        first_sentence_role=(
            "the first sentence is what sets up the pattern"
            if alone.target_prob < clean.target_prob / 2
            else "on this model the second sentence alone already settles the article, so the first one is not needed"
        ),
        diff_position=", ".join(show_token(contrast.str_tokens[p]) for p in contrast.diff_positions),
    )


def prompt_paper_rows(paper: Study, contrast: Contrast, predictions: dict[str, NextTokens]) -> list[Row]:
    """Page 01's table beside the study."""
    clean = predictions["clean"]
    return [
        ("P(' an') on the clean prompt", paper.p_target_clean, round(clean.target_prob, 3)),
        ("logit(' an') - logit(' a'), clean", round(paper.clean_logit_diff, 3), round(clean.logit_diff, 3)),
        ("prompt length in tokens (with BOS)", paper.prompt_tokens, contrast.clean.shape[1]),
    ]


def lens_summary(lens: LogitLens, corrupted: LogitLens) -> dict:
    """What page 02 says about the clean curve, its largest step and the unembedding bias."""
    step_from, step_to, step_before, step_after = lens.biggest_step()
    return dict(
        step_from=step_from,
        step_to=step_to,
        step_before=step_before,
        step_after=step_after,
        step_sublayer=sublayer_after(step_from),
        final_point=lens.final_point,
        unembed_bias=lens.unembed_bias,
        true_diff=lens.logit_diff,
        identity_error=abs(lens.final_point + lens.unembed_bias - lens.logit_diff),
        identity_agreement=agreement(abs(lens.final_point + lens.unembed_bias - lens.logit_diff)),
        corrupted_final=corrupted.final_point,
        corrupted_true=corrupted.logit_diff,
    )


def attribution_summary(lens: LogitLens, top_k: int) -> dict:
    """The largest and the most negative direct contributions, and their sum."""
    ranked = lens.attribution_frame().sort_values("attribution", ascending=False)
    top = ranked.head(top_k)
    return dict(
        top_components=", ".join(f"{c} ({v:+.3f})" for c, v in zip(top["component"], top["attribution"])),
        bottom_component=f"{ranked.iloc[-1]['component']} ({ranked.iloc[-1]['attribution']:+.3f})",
        attribution_sum=float(lens.attribution.sum()),
        top_k=top_k,
    )


def lens_paper_rows(paper: Study, lens: LogitLens) -> list[Row]:
    """Page 02's table beside the study: its curve has no unembedding bias."""
    run_from, _, run_before, run_after = lens.biggest_step()
    paper_from, _, paper_before, paper_after = biggest_step(paper.logit_lens)
    return [
        ("clean logit difference", round(paper.clean_logit_diff, 3), round(lens.logit_diff, 3)),
        ("lens at final_post (no unembedding bias)", paper.logit_lens["final_post"], round(lens.final_point, 3)),
        ("largest step: sublayer", sublayer_after(paper_from), sublayer_after(run_from)),
        ("largest step: before -> after", f"{paper_before:.3f} -> {paper_after:.3f}", f"{run_before:.3f} -> {run_after:.3f}"),
    ]


def agreement(error: float) -> str:
    """How closely two numbers that should be equal agree, as prose: "exactly" at 0 (no
    "within 0.0e+00"), else "to within 3.1e-07"."""
    return "exactly" if error == 0 else f"to within {error:.1e}"
