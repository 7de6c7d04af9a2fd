// facewatch's preprocessing on the GPU: see cuda_preprocess.py. Compiled by pycuda's SourceModule.
extern "C" __global__ void letterbox_bgr_minus_mean(
    const unsigned char *frame, int frame_width, int frame_height,
    float *tensor, int width, int height, int region_width, int region_height,
    float scale_x, float scale_y, float mean_b, float mean_g, float mean_r)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    int plane = width * height;
    int at = y * width + x;
    if (x >= region_width || y >= region_height) {
        tensor[at] = 0.0f; tensor[at + plane] = 0.0f; tensor[at + 2 * plane] = 0.0f;
        return;
    }
    float sx = (x + 0.5f) * scale_x - 0.5f;
    float sy = (y + 0.5f) * scale_y - 0.5f;
    int x0 = (int)floorf(sx), y0 = (int)floorf(sy);
    float fx = sx - x0, fy = sy - y0;
    if (x0 < 0) { x0 = 0; fx = 0.0f; }
    if (y0 < 0) { y0 = 0; fy = 0.0f; }
    if (x0 >= frame_width - 1) { x0 = frame_width - 1; fx = 0.0f; }
    if (y0 >= frame_height - 1) { y0 = frame_height - 1; fy = 0.0f; }
    int x1 = min(x0 + 1, frame_width - 1), y1 = min(y0 + 1, frame_height - 1);
    const unsigned char *p00 = frame + (y0 * frame_width + x0) * 3;
    const unsigned char *p01 = frame + (y0 * frame_width + x1) * 3;
    const unsigned char *p10 = frame + (y1 * frame_width + x0) * 3;
    const unsigned char *p11 = frame + (y1 * frame_width + x1) * 3;
    float mean[3] = {mean_b, mean_g, mean_r};
    for (int c = 0; c < 3; ++c) {
        float top = p00[c] + (p01[c] - p00[c]) * fx;
        float bottom = p10[c] + (p11[c] - p10[c]) * fx;
        tensor[at + c * plane] = rintf(top + (bottom - top) * fy) - mean[c];
    }
}
