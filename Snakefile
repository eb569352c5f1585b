# MiniMind-TTS: corpus -> audio shards -> codec codes -> tokenizer -> LM pretrain -> SFT -> samples -> scores.
#
#   snakemake --cores all                                      # the offline demo (configs/demo.yaml)
#   snakemake --cores all --configfile configs/tiny.yaml       # the whole DAG in minutes (tests use it)
#
# Rules only wire paths, params, threads and resources to the stage functions in stages/.
from snakemake.utils import min_version, validate

min_version("9.0")


# The demo is the default; a config given with --configfile stands on its own (schema defaults fill the rest),
# so a real-corpus run never inherits demo settings such as the demo's SFT speaker.
if not workflow.overwrite_configfiles:

    configfile: f"{workflow.basedir}/configs/demo.yaml"



validate(config, "workflow/schemas/config.schema.json", set_default=True)


include: "workflow/rules/common.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/audio.smk"
include: "workflow/rules/codec.smk"
include: "workflow/rules/text.smk"
include: "workflow/rules/lm.smk"
include: "workflow/rules/eval.smk"


rule all:
    input:
        all_targets(),
    default_target: True
