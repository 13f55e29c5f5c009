"""Job entry points. Each follows the SageMaker training container contract,
so the same module runs as a local subprocess or in a SageMaker training job."""
