"""Click commands: wiring only, the logic lives in mfc.modelfile/build/store/runtime."""
