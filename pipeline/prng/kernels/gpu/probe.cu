// The probe: the first kernel a device runs. pipeline.prng.kernels.gpu.launch compiles the whole source (so a device
// whose compiler refuses any kernel is found out at once), runs this, and checks what it wrote.
extern "C" __global__ void probe(u32 value, u32* out, u32 n) {
    SEEDS(i, n) out[i] = mt_temper(value + i) * 3u;
}
