"""Amazon Bedrock model customization: the JSONL data Bedrock reads and its request (pure, no boto3).

``data`` builds the training and validation files from a dataset version's splits with the same
answer-tuning builder the LoRA path uses (prompt/completion for ``FINE_TUNING``, ``input`` for
``CONTINUED_PRE_TRAINING``) within Bedrock's limits; ``request`` turns a
:class:`~docllm.ports.customization.CustomizationSpec` into ``CreateModelCustomizationJob``'s
parameters; ``events`` models the "Model Customization Job State Change" event Bedrock sends to
the default bus; ``evaluation`` reads Bedrock's own metrics of a job into the custom model's
evaluation report (no weights to evaluate: they stay in Bedrock). docs/customization.md describes
the whole path.
"""
