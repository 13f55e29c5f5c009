"""LoRA fine-tuning of a Hugging Face base model on answer-tuning examples built from the docs.

Light modules (no torch): :mod:`~docllm.lora.config` (the settings), :mod:`~docllm.lora.data`
(prompt/completion JSONL from :func:`docllm.answers.tuning.build_examples`, the train/validation
split), :mod:`~docllm.lora.subset` (optional TF-IDF subsetting of the training sections),
:mod:`~docllm.lora.result` (``result.json``) and :mod:`~docllm.lora.launch` (the job's spec).
:mod:`~docllm.lora.train` (torch, transformers, PEFT) trains the adapter and writes the adapter
and the merged export; :mod:`docllm.jobs.lora_job` runs it under the SageMaker job contract.
docs/lora.md describes the whole path.
"""
