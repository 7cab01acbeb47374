"""The chart of `tidemark-bench queries`: per statement, tidemark's time as a multiple of the
peer's (below 1.0 tidemark is faster), one panel per layout, on a log scale.

usage: chart.py RATIOS_JSON OUT_PNG

RATIOS_JSON: {"title": str, "layouts": [{"name": str, "statements": [str, ...],
"series": [[label, [ratio or null, ...]], ...]}]}
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    data = json.load(open(sys.argv[1]))
    layouts = data["layouts"]
    fig, axes = plt.subplots(1, len(layouts), figsize=(7 * len(layouts), 6), sharey=True, squeeze=False)
    for ax, layout in zip(axes[0], layouts):
        names = layout["statements"]
        series = layout["series"]
        width = 0.8 / max(len(series), 1)
        for k, (label, ratios) in enumerate(series):
            xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(names))]
            ys = [r if r is not None else float("nan") for r in ratios]
            ax.bar(xs, ys, width=width, label=label)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.set_title(layout["name"])
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0][0].set_ylabel("time / peer's time (log; < 1 is faster)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(data["title"])
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
