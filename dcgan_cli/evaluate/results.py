"""A score's result as it is kept and shown: the eval.json of a run or checkpoint (one entry per feature space) and
the lines `dcgan evaluate` prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from dcgan_cli.files import write_atomically


def write_result(path: Path, result: dict) -> Path:
    """Record a result in an eval.json: one entry per feature space, the newest replacing an older one."""
    found = {}
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found = {}
    if not isinstance(found, dict):
        found = {}
    found[result["features"]] = result
    return write_atomically(path, lambda file: file.write((json.dumps(found, indent=1) + "\n").encode()))


def lines(result: dict) -> list[str]:
    """The result as a few lines of text, each score naming its feature space."""
    s, space = result["scores"], result["features"]

    def row(label: str, text: str) -> str:
        return f"  {label}".ljust(36) + text

    head = [f"{result['images']:,} images ({result['generated']})",
            f"  against {result['real_set']}",
            f"  in {result['feature_space']}"]
    pr = [row(f"precision, recall (k={s['nearest_k']}, {space})",
              f"{s['precision']:.3f}, {s['recall']:.3f}   ({s['pr_images']:,} generated vs {s['pr_images']:,} "
              f"real)")] if "precision" in s else []
    binned = [row(f"NDB ({space})", f"{s['ndb']} of {s['bins']} bins differ (NDB/K {s['ndb_k']:.2f}); "
                                    f"{s['bins_covered']} of {s['bins']} bins covered")] if "ndb" in s else []
    if space == "domain":
        body = [row("Frechet distance (domain)", f"{s['frechet_distance']:.3f}"),
                row("modes covered", f"{s['modes_covered']} of {s['classes']} classes (>= {s['mode_share']:.0%} of "
                                     f"the images each: {', '.join(s['covered_classes'])})"),
                row("class histogram KL", f"{s['class_kl']:.4f} nats, KL(generated || real) of the predicted classes"),
                row("mean top-class confidence", f"{s['mean_confidence']:.3f}"), *binned, *pr]
    elif space == "rotation":
        body = [row("Frechet distance (rotation)", f"{s['frechet_distance']:.3f}"), *binned, *pr]
    else:
        kid = [row("KID", f"{s['kid']:.5f} +- {s['kid_std']:.5f}   ({s['kid_subsets']} subsets of "
                          f"{s['kid_subset_size']:,})")] if "kid" in s else []
        body = [row("FID", f"{s['fid']:.3f}"), *kid, *binned, *pr, *protocol_lines(result["protocol"], row)]
    return head + body + conditional_lines(result.get("conditional"), row) + [f"  {result['seconds']:.1f} s"]


def protocol_lines(protocol: dict, row: Callable[[str, str], str]) -> list[str]:
    """How an FID was measured, so that figures measured otherwise are not taken for comparable ones."""
    reference = protocol["reference_images"]
    return [row("protocol", f"{protocol['generated_images']:,} generated against "
                            f"{f'{reference:,} real images' if reference else 'precomputed statistics'}; "
                            f"{protocol['resize']}; input {protocol['range']}")]


def conditional_lines(found: dict | None, row: Callable[[str, str], str]) -> list[str]:
    """A class-conditional G's rows (conditional_scores): conditional accuracy and intra-class FD, overall and
    per class."""
    if found is None:
        return []
    per_class = ", ".join(f"{name} {value:.0%}" for name, value in found["class_accuracy"].items())
    fds = ", ".join(f"{name} {value:.2f}" for name, value in found["class_fd"].items())
    return [row("conditional accuracy (domain)", f"{found['conditional_accuracy']:.1%} of "
                                                  f"{found['per_class']:,} per class asked for: {per_class}"),
            row("intra-class FD (domain)", f"{found['intra_fd']:.3f} mean over classes: {fds}")]
