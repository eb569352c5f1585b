"""`python -m stages.config schema`: print the JSON schema Snakemake validates configs against."""

import json
import sys

from stages.config.base import json_schema
from stages.config.pipeline import PipelineConfig


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["schema"]:
        raise SystemExit("usage: python -m stages.config schema > workflow/schemas/config.schema.json")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **json_schema(PipelineConfig)}
    print(json.dumps(schema, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
