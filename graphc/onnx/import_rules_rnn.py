"""Import rules: ONNX's recurrent ops (RNN, GRU, LSTM), each a graphc scan over the time axis."""
