"""Summaries for the congruence pages: one neuron against the vocabulary, each token's top
neuron and the hubs, mutual exclusive pairs, and the prediction/suppression census."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from transformer_lens.model_bridge import TransformerBridge

from helpers.methods.choice import most_congruent_neuron
from helpers.core.names import Neuron, show_token
from helpers.methods.congruence import neuron_congruence, single_tokens
from helpers.methods.congruence_tables import Congruence, hubs, top_neuron_per_token
from helpers.paper import Study
from helpers.scan.statistics import correlation_table

Row = tuple[str, object, object]
MIN_BIN_COUNT = 5


def away(z: float) -> str:
    """``'3.6 standard deviations above'`` (or below)."""
    return f"{abs(z):.1f} standard deviations {'above' if z >= 0 else 'below'}"


def row_stats(values: np.ndarray, token: int, vocab: list[str]) -> dict:
    """A token's place in one neuron's congruence row: value, rank, z-score, and the row's top."""
    order = np.argsort(values)[::-1]
    z = float((values[token] - values.mean()) / values.std())
    return dict(
        value=float(values[token]),
        rank=int(np.nonzero(order == token)[0][0]) + 1,
        mean=float(values.mean()),
        std=float(values.std()),
        min=float(values.min()),
        away=away(z),
        top=show_token(vocab[order[0]]),
        top_value=float(values[order[0]]),
    )


def prefixed(values: dict, prefix: str) -> dict:
    return {f"{prefix}{k}": v for k, v in values.items()}


def neuron_rank(values: np.ndarray, neuron: Neuron, d_mlp: int) -> dict:
    """A neuron's rank among all neurons in one token's congruence column, and the top two."""
    flat = values.ravel()
    order = np.argsort(flat)[::-1]
    best, second = order[0], order[1]
    return dict(
        rank=int(np.nonzero(order == neuron.flat(d_mlp))[0][0]) + 1,
        value=float(flat[neuron.flat(d_mlp)]),
        best=str(Neuron.from_flat(int(best), d_mlp)),
        best_value=float(flat[best]),
        second=str(Neuron.from_flat(int(second), d_mlp)),
        second_value=float(flat[second]),
        half=int((flat >= flat[best] / 2).sum()),
    )


def control_tokens(model: TransformerBridge, chosen: list[str], n_random: int, seed: int) -> tuple[dict[str, int], list[str], list[int]]:
    """The chosen tokens that are single tokens here (text -> id), those that are not, and
    ``n_random`` other tokens drawn at random as a control (no special tokens)."""
    kept, dropped = single_tokens(model, chosen)
    special = set(model.tokenizer.all_special_ids) | set(kept.values())
    draw = torch.randperm(model.cfg.d_vocab, generator=torch.Generator().manual_seed(seed)).tolist()
    return kept, dropped, [t for t in draw if t not in special][:n_random]


def one_neuron_summary(rows: dict[str, np.ndarray], columns: dict[str, np.ndarray], neuron: Neuron, target_id: int, target: str, vocab: list[str], d_mlp: int) -> dict:
    """Page 07: the neuron's row at the target (both matrices) and the target's column."""
    u, e = row_stats(rows["W_U"], target_id, vocab), row_stats(rows["W_E"], target_id, vocab)
    col_u, col_e = neuron_rank(columns["W_U"], neuron, d_mlp), neuron_rank(columns["W_E"], neuron, d_mlp)
    return dict(
        neuron=str(neuron),
        target=show_token(target),
        d_vocab=f"{len(vocab):,}",
        n_neurons=f"{columns['W_U'].size:,}",
        row_corr=float(np.corrcoef(rows["W_U"], rows["W_E"])[0, 1]),
        **prefixed(u, "u_"),
        **prefixed(e, "e_"),
        col_rank_u=col_u["rank"], col_best_u=col_u["best"], col_best_value_u=col_u["best_value"],
        col_second_u=col_u["second"], col_second_value_u=col_u["second_value"], col_half_u=col_u["half"],
        col_rank_e=col_e["rank"], col_best_e=col_e["best"], col_best_value_e=col_e["best_value"],
        col_second_e=col_e["second"], col_second_value_e=col_e["second_value"],
    )


def chosen_values(row: np.ndarray, kept: dict[str, int], random_ids: list[int], vocab: list[str]) -> dict[str, float]:
    """token string -> congruence, for the chosen tokens then the random controls."""
    values = {t: float(row[i]) for t, i in kept.items()}
    values.update({vocab[i]: float(row[i]) for i in random_ids})
    return values


def chosen_summary(values: dict[str, float], target: str, kept: dict[str, int], n_random: int, mean: float, std: float) -> dict:
    """Page 07's chosen and random tokens: their values and the one farthest from the mean."""
    others = {t: v for t, v in values.items() if t != target}
    largest = max(others.items(), key=lambda kv: abs(kv[1] - mean))
    return dict(
        n_random=n_random,
        chosen_list=", ".join(show_token(t) for t in kept),
        others_list=", ".join(f"{show_token(t)} {v:.3f}" for t, v in others.items()),
        others_largest=show_token(largest[0]),
        others_largest_away=away((largest[1] - mean) / std),
    )


def dropped_phrase(dropped: list[str]) -> str:
    """A note naming the chosen tokens that are not single tokens here (empty if none)."""
    return f"*Not single tokens for this model, so left out: {', '.join(show_token(t) for t in dropped)}.*" if dropped else ""


def top_tokens_side_by_side(tops: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The top tokens under each matrix in adjacent columns, ranked from 1."""
    frame = pd.concat({f"W_out · {m}": t[["token_str", "value"]].rename(columns={"token_str": "token"}) for m, t in tops.items()}, axis=1)
    frame.index = range(1, len(frame) + 1)
    return frame


def run_congruence(model: TransformerBridge, rows: dict[str, np.ndarray], token: str) -> str:
    """This run's W_E and W_U congruence with ``token`` for a table, or why there is none."""
    t = token_id_here(model, token)
    if t is None:
        return f"not one token here ({len(model.tokenizer.encode(token, add_special_tokens=False))} tokens)"
    return f"W_E {rows['W_E'][t]:.3f}; W_U {rows['W_U'][t]:.3f}"


def one_neuron_paper_rows(paper: Study, model: TransformerBridge, neuron: Neuron, rows: dict[str, np.ndarray], glued: dict) -> list[Row]:
    """Page 07's table: the study's neuron's congruence beside this page's neuron's."""
    ref = paper.congruence
    beside: list[Row] = [("neuron", str(paper.neuron), str(neuron))]
    beside += [(f"congruence with {show_token(t)}", v, run_congruence(model, rows, t)) for t, v in ref.top]
    beside += [
        ("mean over the vocabulary", round(ref.mean, 3), f"W_E {glued['e_mean']:.3f}; W_U {glued['u_mean']:.3f}"),
        ("standard deviation over the vocabulary", round(ref.std, 3), f"W_E {glued['e_std']:.3f}; W_U {glued['u_std']:.3f}"),
        ("minimum over the vocabulary", round(ref.min, 3), f"W_E {glued['e_min']:.3f}; W_U {glued['u_min']:.3f}"),
        ("rank among all neurons for ' an'", "first, far above the rest", f"W_E {glued['col_rank_e']}; W_U {glued['col_rank_u']}"),
    ]
    return beside


# ---- page 08: each token's top neuron, the shared neuron, hubs


def gaps_summary(table: pd.DataFrame, matrix: str, n_top: int) -> dict:
    """The tokens whose top neuron leads its runner-up by most."""
    gaps = table["gap"].to_numpy()
    return dict(
        matrix=matrix,
        first_token=table["token_str"].iloc[0],
        first_neuron=str(table["neuron"].iloc[0]),
        first_gap=float(gaps[0]),
        first_second=str(table["second_neuron"].iloc[0]),
        nth_gap=float(gaps[min(n_top, len(gaps)) - 1]),
        n_top=n_top,
        median_gap=float(np.median(gaps)),
        n_layers_top=int(table.head(n_top)["neuron"].map(lambda n: n.layer).nunique()),
    )


def gaps_table(table: pd.DataFrame, n_top: int) -> pd.DataFrame:
    """The top of the gap table, with reader-facing column names."""
    return table.head(n_top)[["token_str", "neuron", "value", "second_neuron", "second_value", "gap"]].rename(
        columns={"token_str": "token", "value": "top value", "second_neuron": "runner-up", "second_value": "runner-up value"}
    )


def shared_choice_phrase(model: TransformerBridge, shared_token: str, kept: bool, token_id: int, neuron: Neuron) -> str:
    """Which token the shared-neuron section studies and why."""
    if kept:
        return f"{show_token(shared_token)} is a single token for this model, so it is studied directly: its most congruent neuron is {neuron}."
    return (
        f"{show_token(shared_token)} is not a single token for this model. Its stand-in is the token with the largest "
        f"gap whose top neuron is also the top neuron of another token: {show_token(model.tokenizer.decode([token_id]))}, with {neuron}."
    )


def shared_neuron_summary(model: TransformerBridge, neuron: Neuron, token_id: int, runner_up: int, topped: pd.DataFrame, choice: str) -> dict:
    """The shared neuron, the token studied, its second token, and the tokens it tops."""
    return dict(
        choice=choice,
        shared_neuron=str(neuron),
        shared_token=show_token(model.tokenizer.decode([token_id])),
        runner_up=show_token(model.tokenizer.decode([runner_up])),
        n_topped=len(topped),
        topped_list=", ".join(topped["token_str"].head(8)),
    )


def curve_names(model: TransformerBridge, curves: dict[int, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """token id -> curve, renamed ``"top-1 = ' though'"`` for a figure legend."""
    return {f"top-1 = {show_token(model.tokenizer.decode([t]))}": c for t, c in curves.items()}


def second_token(shared_top: pd.DataFrame, token_id: int) -> int:
    """The neuron's second most congruent token: the first of its top list that is not ``token_id``."""
    return next(int(t) for t in shared_top["token"] if int(t) != token_id)


def best_bin(curve: pd.DataFrame, min_count: int = MIN_BIN_COUNT) -> tuple[float, float]:
    """(largest proportion, its bin start) over bins with at least ``min_count`` tokens (NaN if none)."""
    solid = curve[curve["count"] >= min_count]
    if solid.empty:
        return float("nan"), float("nan")
    row = solid.loc[solid["proportion"].idxmax()]
    return float(row["proportion"]), float(row["bin_start"])


def shared_curve_summary(counts: dict, counts_2: dict, curve: pd.DataFrame, n_tokens: int, paper: Study) -> dict:
    """The shared neuron's dataset curve for its token and its second token."""
    best_p, best_at = best_bin(curve)
    return dict(
        predicted=f"{counts['predicted']:,}",
        actual=f"{counts['actual']:,}",
        predicted_2=f"{counts_2['predicted']:,}",
        actual_2=f"{counts_2['actual']:,}",
        best_p=best_p,
        best_at=best_at,
        n_scan_tokens=f"{n_tokens:,}",
        paper_though_best=paper.though_best_bin,
        paper_hub=str(paper.hub),
        paper_hub_value=paper_hub_value(paper),
    )


def paper_hub_value(paper: Study) -> float:
    """The top congruence value the study's footnote figure shows for its hub's glitch tokens."""
    return paper.glitch_tokens[0].gap


def last_layer_share(hubs: pd.DataFrame, last_layer: int) -> float:
    """Share of tokens whose top neuron sits in the last layer."""
    return float(hubs.loc[hubs["layer"] == last_layer, "n_tokens"].sum() / hubs["n_tokens"].sum())


def hub_tables_of(passes: dict[tuple[str, str], Congruence]) -> dict[str, pd.DataFrame]:
    """``"W_U, dot"`` -> the hubs of that pass, for every pass."""
    return {f"{matrix}, {measure}": hubs(result) for (matrix, measure), result in passes.items()}


def hubs_summary(passes: dict[tuple[str, str], Congruence], tables: dict[str, pd.DataFrame], matrix: str, n_layers: int) -> dict:
    """The largest hub with the dot product and with the cosine, and where the top neurons sit."""
    dot, cosine = passes[(matrix, "dot")], passes[(matrix, "cosine")]
    dot_hubs, cos_hubs = tables[f"{matrix}, dot"], tables[f"{matrix}, cosine"]
    return dict(
        hub_dot=str(dot_hubs["neuron"].iloc[0]),
        hub_dot_n=int(dot_hubs["n_tokens"].iloc[0]),
        hub_dot_value=float(dot_hubs["max_value"].iloc[0]),
        distinct_dot=f"{len(dot_hubs):,}",
        hub_cos=str(cos_hubs["neuron"].iloc[0]),
        hub_cos_n=int(cos_hubs["n_tokens"].iloc[0]),
        distinct_cos=f"{len(cos_hubs):,}",
        last_dot=last_layer_share(dot_hubs, n_layers - 1),
        last_cos=last_layer_share(cos_hubs, n_layers - 1),
        same_top=float((dot.token_neurons[:, 0] == cosine.token_neurons[:, 0]).float().mean()),
        d_vocab=f"{dot.d_vocab:,}",
    )


def token_id_here(model: TransformerBridge, token: str) -> int | None:
    """The id of ``token`` if it is one token for this model, else None."""
    ids = model.tokenizer.encode(token, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def though_curve_applies(on_paper_model: bool, paper: Study, neuron: Neuron, token_id: int, kept: dict[str, int]) -> bool:
    """Whether the study's ``' though'`` curve is for this run's neuron and token."""
    return on_paper_model and neuron == paper.though_neuron and token_id == kept.get(" though")


def gaps_paper_rows(paper: Study, model: TransformerBridge, embedding_pass: Congruence, embedding_hubs: pd.DataFrame, though_counts: list[Row]) -> list[Row]:
    """Page 08's table beside the study (its ``W_E`` values): gaps, the ``' though'`` neuron, the hub."""
    table = top_neuron_per_token(embedding_pass).set_index("token")
    rows: list[Row] = []
    for ref in paper.token_gaps:
        t = token_id_here(model, ref.token)
        run = "not one token" if t is None else f"{table.loc[t, 'gap']:.3f} ({table.loc[t, 'neuron']} - {table.loc[t, 'second_neuron']})"
        rows.append((f"gap of {show_token(ref.token)}", f"{ref.gap} ({ref.neuron} - {ref.second})", run))
    exists = paper.though_neuron.exists_in(model.cfg.n_layers, model.cfg.d_mlp)
    though = {m: neuron_congruence(model, paper.though_neuron, m) for m in ("W_E", "W_U")} if exists else {}
    for token, value in paper.though.top[:6]:
        t = token_id_here(model, token)
        if not exists:
            run = f"{paper.though_neuron} is not in this model ({model.cfg.n_layers} layers of {model.cfg.d_mlp})"
        else:
            run = "not one token" if t is None else f"W_E {though['W_E'][t]:.3f}; W_U {though['W_U'][t]:.3f}"
        rows.append((f"{paper.though_neuron} with {show_token(token)}", value, run))
    rows += though_counts
    hub_row = embedding_hubs[embedding_hubs["neuron"] == paper.hub]
    rows.append((
        "hub neuron of the glitch tokens",
        f"{paper.hub}, value {paper_hub_value(paper)}",
        f"largest W_E hub {embedding_hubs['neuron'].iloc[0]} ({embedding_hubs['n_tokens'].iloc[0]} tokens, max {embedding_hubs['max_value'].iloc[0]:.2f}); "
        f"{paper.hub} tops {int(hub_row['n_tokens'].iloc[0]) if len(hub_row) else 0} tokens",
    ))
    return rows


# ---- page 09: mutual exclusive pairs


def pairs_table(pairs: pd.DataFrame, n: int) -> pd.DataFrame:
    """The top ``n`` pairs with reader-facing column names, ranked from 1."""
    top = pairs.head(n)[["token_str", "neuron", "score", "token_gap", "neuron_gap", "value"]]
    top = top.rename(columns={"token_str": "token", "token_gap": "token's gap", "neuron_gap": "neuron's gap", "value": "congruence"})
    return top.set_axis(range(1, len(top) + 1))


def pairs_summary(pairs: dict[str, pd.DataFrame], matrix: str, other_matrix: str, n_table: int, d_vocab: int) -> dict:
    """How many mutual pairs each matrix gives, the top pair, and how much the two lists share."""
    main = pairs[matrix]
    top_n = lambda t: set(zip(t["token"].head(n_table), t["neuron"].head(n_table)))  # noqa: E731
    return dict(
        matrix=matrix,
        other_matrix=other_matrix,
        n_pairs=f"{len(main):,}",
        n_pairs_other=f"{len(pairs[other_matrix]):,}",
        d_vocab=f"{d_vocab:,}",
        first_token=main["token_str"].iloc[0],
        first_neuron=str(main["neuron"].iloc[0]),
        first_score=float(main["score"].iloc[0]),
        second_score=float(main["score"].iloc[1]) if len(main) > 1 else float("nan"),
        n_table=n_table,
        overlap=len(top_n(main) & top_n(pairs[other_matrix])),
        median_score=float(main["score"].median()),
    )


def pair_neurons(pairs: pd.DataFrame, n: int) -> list[Neuron]:
    """The neurons of the top ``n`` pairs, each once, in order."""
    return list(dict.fromkeys(pairs["neuron"].head(n)))


def pair_curve_name(token_str: str, neuron: Neuron) -> str:
    return f"{token_str} / {neuron}"


def pair_correlations(scanned, pairs: pd.DataFrame, n: int, bin_width: float) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
    """For the top ``n`` pairs: the pair's top-prediction curve and counts, by pair name."""
    tables = {pair_curve_name(row.token_str, row.neuron): correlation_table(scanned, row.neuron, int(row.token), bin_width) for row in pairs.head(n).itertuples()}
    return {name: curve for name, (curve, _) in tables.items()}, {name: counts for name, (_, counts) in tables.items()}


def curve_phrase(curve: pd.DataFrame, counts: dict, min_count: int = MIN_BIN_COUNT) -> str:
    """``'predicted 1,675 times, next 1,522 times, 1.00 in its highest bin with 5+ tokens'``."""
    solid = curve[curve["count"] >= min_count]
    top = f"{solid['proportion'].iloc[-1]:.2f} in its highest bin with {min_count}+ tokens" if len(solid) else "no bin with enough tokens"
    return f"predicted {counts['predicted']:,} times, next {counts['actual']:,} times, {top}"


def curves_summary(curves: dict[str, pd.DataFrame], counts: dict[str, dict]) -> dict:
    return dict(n_curves=len(curves), curve_summary="; ".join(f"{name}: {curve_phrase(curves[name], counts[name])}" for name in curves))


def pair_place(table: pd.DataFrame, token_id: int | None, neuron: Neuron) -> str:
    """Where a pair sits in this run's list: ``'rank 3, 4.646'``, or why it is not there."""
    if token_id is None:
        return "not one token"
    hit = table[(table["token"] == token_id) & (table["neuron"] == neuron)]
    return f"rank {hit.index[0] + 1}, {hit['score'].iloc[0]:.3f}" if len(hit) else "not a mutual pair"


def pairs_paper_rows(paper: Study, model: TransformerBridge, pairs: dict[str, pd.DataFrame], n_table: int) -> list[Row]:
    """Page 09's table: each of the study's top pairs looked up in this run's W_E and W_U lists."""
    rows = []
    for rank, pair in enumerate(paper.mutual_pairs[:n_table], start=1):
        t = token_id_here(model, pair.token)
        rows.append((f"{rank}. {show_token(pair.token)} / {pair.neuron}", pair.score, f"W_E {pair_place(pairs['W_E'], t, pair.neuron)}; W_U {pair_place(pairs['W_U'], t, pair.neuron)}"))
    return rows


# ---- page 10: the census


def census_summary(table: pd.DataFrame, per_layer: pd.DataFrame, kurtosis_min: float, skew_min: float, n_layers: int) -> dict:
    """Counts of prediction and suppression neurons and where they sit."""
    half = n_layers // 2
    pred, supp = per_layer["prediction"].to_numpy(), per_layer["suppression"].to_numpy()
    supp_over = [int(layer) for layer, p, s in zip(per_layer["layer"], pred, supp) if s > p]
    return dict(
        kurtosis_min=kurtosis_min,
        skew_min=skew_min,
        n_neurons=f"{len(table):,}",
        n_pred=int(pred.sum()),
        n_supp=int(supp.sum()),
        pred_share_second_half=float(pred[half:].sum() / max(pred.sum(), 1)),
        pred_peak=int(per_layer["layer"].iloc[int(pred.argmax())]),
        pred_peak_n=int(pred.max()),
        supp_over=", ".join(map(str, supp_over)) if supp_over else "none",
        median_kurtosis=float(table["kurtosis"].median()),
    )


def census_place(table: pd.DataFrame, neuron: Neuron, prefix: str) -> dict:
    """One neuron's skew, kurtosis, rank by kurtosis within its layer, and class."""
    neuron = Neuron.of(neuron)
    mine = table[table["neuron"] == neuron].iloc[0]
    same_layer = table[table["layer"] == neuron.layer]
    return prefixed(
        dict(
            neuron=str(neuron),
            class_name=mine["class"],
            skew=float(mine["skew"]),
            kurtosis=float(mine["kurtosis"]),
            kurtosis_rank=int((same_layer["kurtosis"] > mine["kurtosis"]).sum()) + 1,
            layer_size=len(same_layer),
            layer=neuron.layer,
        ),
        prefix,
    )



def resolve_congruent_neuron(page, spec) -> tuple[Neuron, str]:
    """The page's ``congruent_neuron`` knob for :data:`helpers.book.page.AUTO_KNOBS`."""
    neuron = most_congruent_neuron(page.model, page.target, spec)
    return neuron, f"{neuron}, the most congruent with {page.target!r}"
