"""The collector that runs on every host: psutil samples to Kafka."""
