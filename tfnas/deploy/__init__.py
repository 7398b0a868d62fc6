"""Deployment: export to TFLite (float, dynamic, int8, QAT) and the accuracy of exported models."""
