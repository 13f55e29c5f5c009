"""Cited answers: retrieve, prompt, generate, align citations, check grounding, or abstain.

Pure domain code (no AWS client, no torch): the search index and the inference engine come in
through their ports, so the same answer path runs over the local engine, SageMaker and Bedrock.
docs/answers.md describes the rules and their thresholds.
"""
