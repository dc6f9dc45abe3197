// Reference values for the Java semantics opensergo.database.sharding reproduces in Python.
// Regenerate: java tests/unit/database/java/JavaVectors.java > tests/unit/database/java/vectors.json
// (any JDK >= 11; the committed file was produced with OpenJDK 17).
import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.List;

public class JavaVectors {
    static String q(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20 || c > 0x7e) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    public static void main(String[] args) {
        List<String> out = new ArrayList<>();
        String[] strings = {"", "a", "abc", "user_1", "order-20261203", "Groovy", "中文", "emoji😀", "north", "asia",
                "a somewhat longer key that overflows an int many times over"};
        List<String> sh = new ArrayList<>();
        for (String s : strings) sh.add("[" + q(s) + ", " + s.hashCode() + ", " + (Math.abs((long) s.hashCode()) % 4) + "]");
        out.add("\"string_hash\": [" + String.join(", ", sh) + "]");
        int[] ints = {0, 1, -1, -3, 7, -7, 2147483647, -2147483648, 123456789};
        List<String> ih = new ArrayList<>();
        for (int v : ints) ih.add("[" + v + ", " + Integer.valueOf(v).hashCode() + ", " + (v % 2) + ", " + Math.abs(v) + "]");
        out.add("\"int\": [" + String.join(", ", ih) + "]");
        long[] longs = {0L, -1L, -3L, 4294967296L, -4294967296L, 9223372036854775807L, -9223372036854775808L, 1335194131697238016L};
        List<String> lh = new ArrayList<>();
        for (long v : longs) lh.add("[" + v + ", " + Long.valueOf(v).hashCode() + ", " + (v % 3) + ", " + Math.abs(v) + "]");
        out.add("\"long\": [" + String.join(", ", lh) + "]");
        String[] bigs = {"0", "1", "-1", "18446744073709551616", "-18446744073709551616", "1180591620717411303424", "123456789012345678901234567890"};
        List<String> bh = new ArrayList<>();
        for (String v : bigs) bh.add("[" + q(v) + ", " + new BigInteger(v).hashCode() + "]");
        out.add("\"big_integer\": [" + String.join(", ", bh) + "]");
        String[] decimals = {"1.50", "1.5", "-2.25", "0.000", "3.5", "12345678901234567890.5"};
        List<String> dh = new ArrayList<>();
        for (String v : decimals) dh.add("[" + q(v) + ", " + new BigDecimal(v).hashCode() + ", " + q(new BigDecimal(v).toString()) + "]");
        out.add("\"big_decimal\": [" + String.join(", ", dh) + "]");
        double[] doubles = {1.5, 0.1, -2.0, 1e10, 1e-5, 123456.789, 12345678.9};
        List<String> fh = new ArrayList<>();
        for (double v : doubles) fh.add("[" + v + ", " + Double.valueOf(v).hashCode() + ", " + q(Double.toString(v)) + "]");
        out.add("\"double\": [" + String.join(", ", fh) + "]");
        out.add("\"boolean\": [[true, " + Boolean.TRUE.hashCode() + "], [false, " + Boolean.FALSE.hashCode() + "]]");
        // MOD's BigInteger.mod is never negative; Java's % keeps the dividend's sign.
        List<String> mods = new ArrayList<>();
        for (long v : new long[] {-3, -1, 0, 5, 11, -11}) mods.add("[" + v + ", " + BigInteger.valueOf(v).mod(BigInteger.valueOf(4)) + ", " + (v % 4) + "]");
        out.add("\"mod4\": [" + String.join(", ", mods) + "]");
        System.out.println("{\n  " + String.join(",\n  ", out) + "\n}");
    }
}
