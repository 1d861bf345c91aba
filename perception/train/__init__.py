"""Training and ONNX export of the perception models (torch, CPU; imports `twin` for data).

Modules: `convnext` (ConvNeXt-V2 encoder, FCMAE, U-Net), `pretrain` (masked pretraining),
`seg` (segmenter fine-tuning + export), `restore_train`, `focus_train`, `twin_data`
(domain-randomised twin frames), `synth` (procedural scenes), `data` (targets, samplers),
`export` (ONNX, QDQ int8, JSON records), `commands` (what `emtwin train` / `emtwin adapt` run).
Nothing here is imported at inference time.
"""
