"""Stage `report_pages`: the HTML pages that `snakemake --report` embeds: players, metric tables, curves, config.

    python -m stages.report_pages --eval results/demo/eval --codec-eval results/demo/codec_eval \
        --samples sft=results/demo/samples/sft \
        --curves codec=results/demo/codec/tensorboard pretrain=results/demo/pretrain.checkpoints/tensorboard \
        --config-json '{...}' --out results/demo/report

Snakemake's report shows a WAV only as a download link, so samples are embedded as inline `<audio controls>`
players (Ogg Vorbis data URIs keep the page small): for each shown utterance, the ground truth, its codec
resynthesis and every model's sample side by side. Curves are drawn from the TensorBoard logs of codec
training, pretrain and SFT.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import soundfile as sf

from stages.common.atomic import atomic_output
from stages.common.cli import named_paths
from stages.common.tables import SAMPLES, SAMPLES_FILE, SCORES_FILE, read_table, system_name

STYLE = """<style>body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}th{background:#f4f4f4}
td.text{text-align:left;min-width:14em;max-width:28em}audio{width:210px;height:32px}.note{color:#555;max-width:60em}</style>"""
SUMMARY_COLUMNS = ("clips", "wer", "cer", "ps_wer", "ps_cer", "stoi", "pesq", "mel_l1", "dtw_log_mel", "duration_ratio", "speaker_sim",
                   "speaker_sim_other", "dnsmos_ovrl", "rtf", "stopped_by_eos")


def audio_tag(path: Path) -> str:
    samples, rate = sf.read(path, dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="OGG", subtype="VORBIS")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<audio controls preload="none" src="data:audio/ogg;base64,{data}"></audio>'


def samples_page(eval_dir: Path, codec_eval_dir: Path, samples: dict[str, Path], per_voice: int) -> str:
    utterances = pq.read_table(eval_dir / SCORES_FILE, columns=["system", "utt_id", "voice", "text"])
    truth = [r for r in utterances.to_pylist() if r["system"] == "ground_truth"]
    by_voice = defaultdict(list)
    for r in truth:
        by_voice[r["voice"]].append(r)
    model_files = {}
    for name, folder in samples.items():
        for s in read_table(folder / SAMPLES_FILE, SAMPLES).to_pylist():
            model_files[(system_name(name, s["mode"]), s["utt_id"])] = folder / s["path"]
    systems = sorted({system for system, _ in model_files})
    head = "".join(f"<th>{html.escape(s)}</th>" for s in ["voice", "text", "ground truth", "codec", *systems])
    rows = []
    for voice in sorted(by_voice):
        for r in by_voice[voice][:per_voice]:
            cells = [html.escape(voice), f'<span>{html.escape(r["text"])}</span>',
                     audio_tag(codec_eval_dir / "ground_truth" / f"{r['utt_id']}.wav"),
                     audio_tag(codec_eval_dir / "codec" / f"{r['utt_id']}.wav")]
            cells += [audio_tag(model_files[(s, r["utt_id"])]) if (s, r["utt_id"]) in model_files else "–"
                      for s in systems]
            rows.append("<tr>" + "".join(f'<td class="text">{c}</td>' if i < 2 else f"<td>{c}</td>"
                                         for i, c in enumerate(cells)) + "</tr>")
    return (f"<html><head><meta charset='utf-8'>{STYLE}</head><body><h2>Samples: held-out sentences</h2>"
            f"<p class='note'>Each row: the ground truth, its codec resynthesis (the ceiling for the LM), and each "
            f"model's sample of the same sentence and voice.</p><table><tr>{head}</tr>{''.join(rows)}</table>"
            "</body></html>")


def _fmt(value) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return html.escape(str(value))


def metrics_page(eval_dir: Path) -> str:
    summary = json.loads((eval_dir / "metrics.json").read_text())
    parts = [f"<html><head><meta charset='utf-8'>{STYLE}</head><body><h2>Metrics</h2>",
             f"<p class='note'>{html.escape(summary['note'])}</p>"]
    for language in sorted({lang for per in summary["systems"].values() for lang in per}):
        rows = [(system, per[language]) for system, per in summary["systems"].items() if language in per]
        shown = [c for c in SUMMARY_COLUMNS if any(c in stats for _, stats in rows)]
        head = "".join(f"<th>{c}</th>" for c in ["system", *shown])
        body = "".join("<tr><td class='text'>" + html.escape(system) + "</td>" +
                       "".join(f"<td>{_fmt(stats.get(c, float('nan')))}</td>" for c in shown) + "</tr>"
                       for system, stats in rows)
        parts.append(f"<h3>{language}</h3><table><tr>{head}</tr>{body}</table>")
    parts.append("<p class='note'>wer/cer: corpus rates (all errors / all reference words or characters) by "
                 "Whisper tiny.en; ps_wer/ps_cer: the same by pocketsphinx; speaker_sim: cosine to the same voice's training clips, speaker_sim_other: to "
                 "the other voices; rtf: generation seconds per second of audio.</p></body></html>")
    return "".join(parts)


TRANSCRIPT_COLUMNS = ("transcript", "wer", "cer", "ps_transcript", "ps_wer", "ps_cer")


def transcripts_page(eval_dir: Path) -> str:
    """Every scored clip's transcripts beside its text, grouped by voice and sentence, so a WER can be read."""
    table = pq.read_table(eval_dir / SCORES_FILE)
    present = [c for c in TRANSCRIPT_COLUMNS if c in table.column_names]
    rows = [r for r in table.select(["system", "utt_id", "voice", "text", *present]).to_pylist()
            if r.get("transcript") or r.get("ps_transcript")]
    rows.sort(key=lambda r: (r["voice"], r["utt_id"], r["system"]))
    head = "".join(f"<th>{c}</th>" for c in ["voice", "utt_id", "system", "text", *present])
    body = []
    for r in rows:
        cells = [_fmt(r["voice"]), _fmt(r["utt_id"]), _fmt(r["system"]), f"<td class='text'>{_fmt(r['text'])}</td>"]
        cells = [f"<td>{c}</td>" for c in cells[:3]] + [cells[3]]
        cells += [f"<td class='text'>{_fmt(r[c] or '')}</td>" if c.endswith("transcript") else f"<td>{_fmt(r[c])}</td>"
                  for c in present]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<html><head><meta charset='utf-8'>{STYLE}</head><body><h2>Transcripts</h2>"
            "<p class='note'>What each recogniser heard in every scored clip (transcript: Whisper tiny.en; "
            "ps_transcript: pocketsphinx), with the clip's WER and CER. An empty transcript is an empty cell.</p>"
            f"<table><tr>{head}</tr>{''.join(body)}</table></body></html>")


def read_scalars(tensorboard_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: ([e.step for e in accumulator.Scalars(tag)], [e.value for e in accumulator.Scalars(tag)])
            for tag in accumulator.Tags()["scalars"]}


def curves_page(curves: dict[str, Path]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [f"<html><head><meta charset='utf-8'>{STYLE}</head><body><h2>Training curves</h2>"]
    for name, folder in curves.items():
        if not Path(folder).is_dir():  # e.g. a codec served from the between-workflow cache: no training here
            parts.append(f"<p>{html.escape(name)}: not trained in this run (no logs in {html.escape(str(folder))})</p>")
            continue
        scalars = read_scalars(folder)
        wanted = [t for t in sorted(scalars) if any(k in t for k in ("loss", "accuracy", "mel_l1", "codes"))]
        if not wanted:
            parts.append(f"<p>{html.escape(name)}: no curves logged</p>")
            continue
        cols = min(3, len(wanted))
        fig, axes = plt.subplots(math.ceil(len(wanted) / cols), cols, figsize=(4.2 * cols, 2.8 * math.ceil(
            len(wanted) / cols)), squeeze=False)
        for ax, tag in zip(axes.flat, wanted):
            steps, values = scalars[tag]
            ax.plot(steps, values, marker="." if len(steps) < 30 else None)
            ax.set_title(tag, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(wanted):]:
            ax.axis("off")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        data = base64.b64encode(buffer.getvalue()).decode()
        parts.append(f"<h3>{html.escape(name)}</h3><img alt='{html.escape(name)} curves' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "".join(parts)


def config_page(config: dict) -> str:
    import yaml

    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    return (f"<html><head><meta charset='utf-8'>{STYLE}</head><body><h2>Resolved configuration</h2>"
            f"<pre>{html.escape(text)}</pre></body></html>")


def build_report(eval_dir: Path, codec_eval_dir: Path, samples: dict[str, Path], curves: dict[str, Path],
                 config: dict, out: Path, per_voice: int = 3) -> None:
    with atomic_output(out) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "samples.html").write_text(samples_page(eval_dir, codec_eval_dir, samples, per_voice), encoding="utf-8")
        (tmp / "metrics.html").write_text(metrics_page(eval_dir), encoding="utf-8")
        (tmp / "transcripts.html").write_text(transcripts_page(eval_dir), encoding="utf-8")
        (tmp / "curves.html").write_text(curves_page(curves), encoding="utf-8")
        (tmp / "config.html").write_text(config_page(config), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=Path, required=True, help="the evaluate output folder")
    parser.add_argument("--codec-eval", type=Path, required=True, help="the codec_eval output folder (its WAVs)")
    parser.add_argument("--samples", nargs="*", default=[], help="NAME=FOLDER of each synthesize output")
    parser.add_argument("--curves", nargs="*", default=[], help="NAME=TENSORBOARD_FOLDER")
    parser.add_argument("--config-json", default="{}", help="the resolved pipeline config")
    parser.add_argument("--per-voice", type=int, default=3, help="utterances with players per voice")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    build_report(args.eval, args.codec_eval, named_paths(args.samples, "--samples"),
                 named_paths(args.curves, "--curves"), json.loads(args.config_json), args.out, args.per_voice)


if __name__ == "__main__":
    main()
