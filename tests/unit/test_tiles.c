/* The encoder's default tile size (codec/tiles.c) against hand-computed
 * sizes: the largest power of two from 16 K to 256 K weights that gives
 * the model at least 16,384 tiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tiles.h"

static void test_llm_sizes_keep_256k(void **state)
{
    (void)state;
    /* Llama-2-7B shapes: 32 x (4 x 4096^2 + 3 x 4096 x 11008) + 2 x 32000 x 4096 */
    const uint64_t llama7b = 32ull * (4ull * 4096 * 4096 + 3ull * 4096 * 11008) + 2ull * 32000 * 4096;
    assert_int_equal(llama7b, 6738149376ull);
    assert_int_equal(wc_auto_tile_weights(llama7b), 262144);
    /* the smallest model that keeps them: 16,384 tiles of 256 K */
    assert_int_equal(wc_auto_tile_weights(16384ull * 262144), 262144);
    assert_int_equal(wc_auto_tile_weights(16384ull * 262144 - 1), 131072);
    assert_int_equal(wc_auto_tile_weights(~0ull), 262144);
}

static void test_halves_with_the_model(void **state)
{
    (void)state;
    /* 4 layers of Llama-2-7B shapes: 1,071,644,672 weights; / 65536 = 16,351.9 < 16,384 */
    assert_int_equal(wc_auto_tile_weights(1071644672ull), 32768);
    assert_int_equal(wc_auto_tile_weights(16384ull * 65536), 65536);
    assert_int_equal(wc_auto_tile_weights(16384ull * 32768), 32768);
    assert_int_equal(wc_auto_tile_weights(16384ull * 32768 - 1), 16384);
}

static void test_small_models_floor_at_16k(void **state)
{
    (void)state;
    assert_int_equal(wc_auto_tile_weights(10310776), 16384); /* the real slice's coded weights */
    assert_int_equal(wc_auto_tile_weights(1), 16384);
    assert_int_equal(wc_auto_tile_weights(0), 16384);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llm_sizes_keep_256k),
        cmocka_unit_test(test_halves_with_the_model),
        cmocka_unit_test(test_small_models_floor_at_16k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
