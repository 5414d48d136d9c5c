namespace CharRnn.Cuda;
