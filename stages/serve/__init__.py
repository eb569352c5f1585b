"""Serving a trained model over HTTP: `minimind-tts serve` (stages.serve.cli), the FastAPI app (app), its
limits (config), admission control (slots), request checks (speech_request), formats (audio_formats), and
the page at `/` (page/index.html).

    minimind-tts serve --model results/demo/sft/model --codec-config assets/codec/demo-75hz.yaml \
        --codec-checkpoint assets/codec/demo-75hz.ckpt --port 8000
"""
