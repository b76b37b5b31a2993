/*
 * standalone.c - runs a fuzz target on files, without libFuzzer: for
 * replaying the seed corpus (or a crash file) with any compiler, under
 * valgrind, or where libFuzzer is missing.
 *
 *   cc -Ic_src fuzz/standalone.c fuzz/fuzz_frame.c c_src/frame.c c_src/buf.c -o replay
 *   ./replay fuzz/corpus/frame/seed-file ...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    int i, n = 0;

    for (i = 1; i < argc; i++) {
        FILE *fh = fopen(argv[i], "rb");
        uint8_t *buf;
        long len;

        if (!fh) {
            perror(argv[i]);
            return 2;
        }
        fseek(fh, 0, SEEK_END);
        len = ftell(fh);
        fseek(fh, 0, SEEK_SET);
        buf = malloc(len > 0 ? (size_t)len : 1);
        if (!buf || (len > 0 && fread(buf, 1, (size_t)len, fh) != (size_t)len)) {
            fprintf(stderr, "%s: read failed\n", argv[i]);
            return 2;
        }
        fclose(fh);
        LLVMFuzzerTestOneInput(buf, (size_t)len);
        free(buf);
        n++;
    }
    printf("%d inputs ran\n", n);
    return 0;
}
