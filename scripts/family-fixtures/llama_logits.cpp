// llama.cpp's own logits for a fixture: every position of the given ids (one batch from position 0), then a
// greedy continuation decoded token by token. Writes f32 [n, vocab] logits then the greedy ids (i32) to OUT.
// Build: see README.md (links the static libraries of a llama.cpp build of the same sdist).
// Usage: llama_logits MODEL.gguf N_CTX N_GREEDY OUT id...
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

static void log_quiet(ggml_log_level, const char *, void *) {}

int main(int argc, char ** argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s MODEL.gguf N_CTX N_GREEDY OUT id...\n", argv[0]);
        return 2;
    }
    const int n_ctx = atoi(argv[2]);
    const int n_greedy = atoi(argv[3]);
    std::vector<llama_token> ids;
    for (int i = 5; i < argc; i++) ids.push_back(atoi(argv[i]));
    const int n = (int) ids.size();

    llama_log_set(log_quiet, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "%s: load failed\n", argv[1]); return 1; }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_ctx;
    cp.n_ubatch = n_ctx;
    cp.n_threads = 1;
    cp.n_threads_batch = 1;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.swa_full = true;
    cp.type_k = GGML_TYPE_F32;  // f16 by default: 1e-2 off
    cp.type_v = GGML_TYPE_F32;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "context failed\n"); return 1; }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "decode failed\n"); return 1; }
    FILE * out = fopen(argv[4], "wb");
    for (int i = 0; i < n; i++) fwrite(llama_get_logits_ith(ctx, i), sizeof(float), n_vocab, out);

    llama_batch one = llama_batch_init(1, 0, 1);
    const float * last = llama_get_logits_ith(ctx, n - 1);
    for (int s = 0; s < n_greedy; s++) {
        int best = 0;
        for (int v = 1; v < n_vocab; v++) if (last[v] > last[best]) best = v;
        int32_t b = best;
        fwrite(&b, sizeof(b), 1, out);
        one.token[0] = best;
        one.pos[0] = n + s;
        one.n_seq_id[0] = 1;
        one.seq_id[0][0] = 0;
        one.logits[0] = 1;
        one.n_tokens = 1;
        if (llama_decode(ctx, one) != 0) { fprintf(stderr, "decode failed\n"); return 1; }
        last = llama_get_logits_ith(ctx, 0);
    }
    fclose(out);
    llama_batch_free(batch);
    llama_batch_free(one);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
